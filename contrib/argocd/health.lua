-- Argo CD health check for taskgrant.dev/TaskGrant: resource.customizations.health.taskgrant.dev_TaskGrant.
-- See docs/gitops.md; contrib/argocd/health_test.yaml lists the expected result for each testdata file.
--   Pending -> Progressing; Active -> Healthy; Revoked -> Healthy (a clean end, not an error);
--   Denied -> Degraded; no status yet, or a generation the operator has not seen -> Progressing.
-- Only Lua's base library is used: Argo CD runs custom health checks without the string library.
local hs = {}

local function condition(status, kind)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(status, kind)
  local c = condition(status, kind)
  return c ~= nil and c.status == "True"
end

local function text(value, fallback)
  if value == nil or value == "" then
    return fallback
  end
  return tostring(value)
end

local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local phase = status.phase
local reason = text(status.reason, "no reason given")
local message = status.message

-- A spec the operator has not reconciled yet. Its conditions carry the generation it last acted on
-- (status.observedGeneration keeps the generation it admitted). Revoked and Denied are final: the
-- operator never acts on them again, so they never wait for it.
if phase ~= "Revoked" and phase ~= "Denied" then
  local generation = nil
  if type(obj.metadata) == "table" then
    generation = obj.metadata.generation
  end
  local observed = status.observedGeneration
  local ready = condition(status, "Ready")
  if ready ~= nil and ready.observedGeneration ~= nil then
    observed = ready.observedGeneration
  end
  if type(generation) == "number" and type(observed) == "number" and observed < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. generation .. " (observed " .. observed .. ")"
    return hs
  end
end

if phase == "Denied" then
  hs.status = "Degraded"
  hs.message = text(message, "Denied (" .. reason .. ")")
elseif phase == "Revoked" then
  hs.status = "Healthy"
  hs.message = "Access revoked (" .. reason .. ")"
  if message ~= nil and message ~= "" then
    hs.message = hs.message .. ": " .. message
  end
elseif phase == "Active" then
  hs.status = "Healthy"
  hs.message = text(message, "Access active")
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = text(message, "Pending (" .. reason .. ")")
-- No phase this check knows: read the conditions, as kstatus does.
elseif isTrue(status, "Stalled") then
  hs.status = "Degraded"
  hs.message = text(condition(status, "Stalled").message, text(message, "Stalled"))
elseif isTrue(status, "Reconciling") then
  hs.status = "Progressing"
  hs.message = text(condition(status, "Reconciling").message, text(message, "Reconciling"))
elseif isTrue(status, "Ready") then
  hs.status = "Healthy"
  hs.message = text(condition(status, "Ready").message, text(message, "Ready"))
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
end
return hs

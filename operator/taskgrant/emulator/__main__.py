from taskgrant.emulator.core import main

main()

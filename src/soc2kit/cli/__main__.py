from soc2kit.cli.main import main

main()

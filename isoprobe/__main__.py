from isoprobe.cli.app import main

main()

from keel.cli.main import main

main()

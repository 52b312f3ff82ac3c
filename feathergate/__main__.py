from feathergate.cli import main

main()

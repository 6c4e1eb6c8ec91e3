from prik.cli import main

main()

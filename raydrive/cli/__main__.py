from raydrive.cli import main

main()

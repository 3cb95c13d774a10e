from oncall.cli import main

main()

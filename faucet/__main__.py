from faucet.cli import main

main()

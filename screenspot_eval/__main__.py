from screenspot_eval.cli.app import main

main()

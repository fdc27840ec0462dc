from layer_sim.cli import main

main()

from sandbox.agent.main import main

main()

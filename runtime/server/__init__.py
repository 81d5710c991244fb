"""The server's processes: launch, the scheduler and detokenizer child processes, zmq IPC and
its messages, and the main process's TokenizerManager."""

"""``namesrv-redis admin``: an mqadmin-like CLI that speaks the remoting protocol to any
RocketMQ name server (the Java one or ours). A tool on top of the layers."""

"""Serial consoles: one stream interface, IPMI SOL and SSH transports, a broker, logs."""

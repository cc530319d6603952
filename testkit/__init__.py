# Building blocks shared by tests/ and bench/, which import neither each other nor anything
# else but resolver/: name-table topologies written like `docker run` scripts (topology.py)
# and a loopback port free for UDP and TCP, with a wait until a server process answers on it
# (ports.py). Not part of the installed package.

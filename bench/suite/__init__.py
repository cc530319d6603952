# `make bench`: scopedns against Docker's embedded DNS, dnsmasq, unbound, aardvark-dns and NSD
# on the same names and query files (run.py is the entry point: python -m bench.suite.run).

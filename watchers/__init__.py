# State sources that feed resolver.table.NameTable: the Docker engine watcher (docker.py, over
# engine_api.py), the snapshot file (snapshot.py), and the pure translation of Docker's JSON
# into resolver.model records (translate.py). Nothing is re-exported here, so importing the
# pure translate module does not pull in aiohttp (docs/design.md).

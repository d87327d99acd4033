"""The vector index: faiss in the process (`faiss`, `embedded`) or a Milvus server (`milvus`)."""

import logging

# faiss's loader logs at INFO each optimised module it tries: about ten lines on every command,
# "could not load" ones included. The wheels of faiss >= 1.12 ship one module that picks the
# CPU's instructions at run time, so those attempts always fail and mean nothing; its warnings
# and errors still show. Set here, before `tongkuan.index.faiss` imports faiss: the loader logs
# only while faiss is imported.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

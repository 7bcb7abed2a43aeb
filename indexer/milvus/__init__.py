"""Milvus access: the store over one collection (Lite or a server), its row schema, side collections, Lite
databases, filter expressions and file names as stored text."""

"""Every file cifarkit reads that is not pixels, parsed once into checked types.

``jsonfile`` reads a JSON file into a pydantic model under a size cap and a nesting cap;
``names`` turns a name read from data (split, class, shard, file) into a path component, or
refuses it. Other modules receive the typed objects these return, never a raw dict.
"""

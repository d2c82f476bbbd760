"""calicoctl: the command line for Calico resources.

Enters: manifests (`-f FILE|-`), command-line names and flags, the datastore configuration. Leaves: writes
through `calico.datastore.store.ResourceStore`, tables / YAML / JSON on stdout, errors naming the resource on
stderr (with a non-zero exit).
"""

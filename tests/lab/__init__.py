"""Full-stack lab tests: real calico-felix in network namespaces built by `calico-lab` (heavy)."""

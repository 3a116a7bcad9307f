"""Studies built on the g2gnet library: each folder turns committed run directories into one
document (its suites, prose and claims). The library itself knows none of them."""

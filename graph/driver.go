package graph

// NewDriver returns a Driver that keeps all snapshot metadata in a bbolt
// store at root/metadata.db and the data of each snapshot in b, by numeric
// id. At open it finishes what a crash interrupted: snapshots half-created
// or half-removed are removed, and b.Cleanup drops data nothing refers to.
func NewDriver(root string, b Backend) (Driver, error) {
	return nil, Errorf(ErrNotImplemented, "new driver", root, "metadata store not written yet")
}

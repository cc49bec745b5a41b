package shm

import "errors"

// Errors from attaching a table; each says which check failed. They wrap with details.
var (
	ErrNotTable  = errors.New("shm: not a health table (bad magic)")
	ErrVersion   = errors.New("shm: unsupported table layout version")
	ErrTruncated = errors.New("shm: table file truncated")
	ErrCorrupt   = errors.New("shm: table header corrupt")
	ErrFull      = errors.New("shm: table full")
	ErrFenced    = errors.New("shm: slot was taken over (stale fence)")
	ErrNotOwner  = errors.New("shm: not the slot's owner")
	ErrReadOnly  = errors.New("shm: table opened read-only")
)

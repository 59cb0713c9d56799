package reliability

// Budget meters memory that several structures share, such as every
// stream of a receiver: a structure asks it before it grows and tells it
// what it gives back. Delivery and Tracker take one in their configs; nil
// means unmetered. Reserve is called only when a structure grows (rarely,
// geometrically), never per packet.
type Budget interface {
	// Reserve asks for n more bytes and reports whether they were
	// granted; a structure refused stays at its size and counts what
	// that costs.
	Reserve(n int) bool
	// Release gives back n bytes reserved earlier.
	Release(n int)
}

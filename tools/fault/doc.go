// Package fault holds telewire's fault-behaviour tests over real sockets on
// loopback: a sender whose receiver is down, a receiver that restarts on
// the same port, and a sender that restarts from the same address. They
// drive the public sender.New and receiver.Listen, the same code paths an
// application uses, and check that both ends keep going and that their
// statistics stay consistent. The package has no API; the simulated fault
// scenarios (burst loss, corruption, a blackhole) are in tools/sim.
package fault

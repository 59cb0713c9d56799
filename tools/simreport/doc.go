// Package simreport sweeps repair settings across loss scenarios in the
// fake-clock simulator (tools/sim) and reports what each setting bought:
// residual loss against the raw loss of the link, the bandwidth it cost,
// and the delivery latency it added. It is the library behind
// "telewire sim".
//
// Three parts, each usable on its own:
//
//   - Scenarios and settings ([Suite], [Scenario], [Setting]) are plain
//     values read from a JSON scenario file by [Parse] (or the built-in
//     set, [Default]). They say nothing about how a run is configured.
//   - Applying them is in one place: [Scenario.Config] turns a scenario
//     into a sim.Config (an outage becomes two timed changes of the
//     forward link) and [Setting.Apply] layers a repair setting on it,
//     setting every repair knob explicitly so that "none" means no repair
//     whatever the transport's defaults. Anything the simulator, sender
//     or receiver cannot express yet fails there with [ErrUnsupported]
//     and a message naming it (today: an outage of the reverse link); it
//     is reported as not run, never run as something else.
//   - [Run] executes every (scenario, setting) pair and returns a
//     [Report]: one [Row] of measurements per pair, printed as markdown
//     tables by [Report.WriteMarkdown], as JSON by encoding/json, and as
//     pictures by [WritePlots].
//
// # Scenario files
//
// A scenario file is one JSON object:
//
//	{
//	  "settings": [
//	    {"name": "none"},
//	    {"name": "nack", "nack": true},
//	    {"name": "fec-10+3", "fec": "fixed", "fec_data": 10, "fec_parity": 3, "fec_interleave": 2},
//	    {"name": "nack-ordered", "nack": true, "delivery": "ordered", "latency_budget": "200ms"}
//	  ],
//	  "defaults": {"messages": 5000, "rate": 1000, "size": 200, "seed": 1, "rev": "delay 10ms"},
//	  "scenarios": [
//	    {"name": "loss-5", "fwd": "delay 10ms loss random 5%"},
//	    {"name": "outage", "fwd": "delay 10ms", "outages": [{"from": "1s", "to": "3s"}]},
//	    {"name": "dup", "fwd": "delay 10ms duplicate 5%", "settings": ["none"]}
//	  ]
//	}
//
// "settings" is optional (default: the built-in matrix, [DefaultSettings]);
// a setting's "nack" (default false), "fec" (off, fixed or auto; default
// off) and "delivery" (ordered, unordered or latest; default the
// receiver's) are described at [Setting]. "defaults" supplies any
// scenario field a scenario leaves out (built in: 5000 messages of 200
// bytes at 1000/s, seed 1, perfect links); a scenario's "settings" lists
// the settings to run for it (default: all). Specs are netem option
// strings (tools/netem.ParseSpec); durations are Go duration strings
// ("200ms", "1.5s"); outage times count from the first send, and "dir" is
// fwd (the default), rev or both. Errors are [*ParseError] values naming
// the object and field, and wrap a sentinel ([ErrSyntax],
// [ErrUnknownField], [ErrBadValue], ...). Files are at most 1 MiB.
//
// # What is measured
//
// Raw loss is the forward link's own count: datagrams it lost, dropped at
// its queue limit or corrupted, over datagrams offered to it (DATA,
// retransmissions, parity and heartbeats alike). Residual loss is the
// fraction of messages never delivered (sim.Result.Residual); overhead is
// wire bytes per payload byte minus one (sim.Result.Overhead); latency is
// from the send call to the delivery, and the latency plots draw the
// quantiles tools/sim reports (p50, p99, p99.9, maximum) on a "nines"
// scale. Every run is decided by its seed, so the same file gives the
// same report.
package simreport

//go:build tools

// Package runsc only records the gVisor dependency; see go.mod.
package runsc

import _ "gvisor.dev/gvisor/runsc"

package api

import "testing"

// TestRoutesRegister catches patterns the mux refuses (conflicts panic at start-up).
func TestRoutesRegister(t *testing.T) {
	New(nil, nil, Config{})
}

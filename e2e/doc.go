// Package e2e holds the acceptance tests of the platform: each starts a real
// `faas serve` (package testserver) and drives it over HTTP with real gVisor
// sandboxes, as a user would.
package e2e

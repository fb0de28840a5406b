//go:build race

package integration

// The race detector's shadow memory grows with what the test touches, so
// RssAnon is no measure of the agent under -race.
func init() { raceBuild = true }

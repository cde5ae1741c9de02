//go:build leak

package main

// Built with -tags leak, the plugin leaks on purpose (see leaky).
func init() { leaky = true }

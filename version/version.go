// Package version holds the build's version string.
package version

// Version is set at build time with -ldflags "-X hcproxy/version.Version=...".
var Version = "0.1.0-dev"

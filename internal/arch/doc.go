// Package arch holds the tests that guard the module's dependency
// direction: the domain in the middle imports nothing of ours, adapters
// import the domain, and only the commands compose everything.
package arch

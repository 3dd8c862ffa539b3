//go:build !unix

package deploy

// tryLock locks nothing here: each build gets a temporary directory.
func tryLock(string) (unlock func(), ok bool) { return nil, false }

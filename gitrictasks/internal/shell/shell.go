// Package shell builds POSIX sh command lines from untrusted words.
//
// Every word that gitric sends to a remote shell (paths, refs, user names)
// goes through Quote, so that a value such as `a dir; rm -rf ~` is one
// argument and never a command.
package shell

import "strings"

// Quote returns s as a single sh word. Words made only of characters that
// are never special to sh are returned as they are, for readable logs;
// anything else is wrapped in single quotes, an embedded single quote
// becoming: close the quotes, a backslash-escaped quote, reopen the quotes.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isPlain(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes every word and joins them with spaces.
func Join(words ...string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = Quote(w)
	}
	return strings.Join(quoted, " ")
}

func isPlain(s string) bool {
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune("-_./:@%+,", r):
		default:
			return false
		}
	}
	return true
}

//go:build !linux

package doowfilelogreceiver

import "errors"

// statFile: the birth time is read with Linux's statx only.
func statFile(string) (fileKey, error) {
	return fileKey{}, errors.New("doow.file.id needs Linux (statx)")
}

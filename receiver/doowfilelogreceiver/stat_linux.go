package doowfilelogreceiver

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// statFile reads the file's device, inode and birth time (statx; ext4, xfs, btrfs and
// tmpfs give the birth time).
func statFile(path string) (fileKey, error) {
	if path == "" {
		return fileKey{}, errors.New("no log.file.path")
	}
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_INO|unix.STATX_BTIME, &st); err != nil {
		return fileKey{}, fmt.Errorf("statx: %w", err)
	}
	if st.Mask&unix.STATX_BTIME == 0 || st.Mask&unix.STATX_INO == 0 {
		return fileKey{}, errors.New("statx: the file system gives no birth time")
	}
	return fileKey{
		dev:   unix.Mkdev(st.Dev_major, st.Dev_minor),
		ino:   st.Ino,
		btime: st.Btime.Sec*1_000_000_000 + int64(st.Btime.Nsec),
	}, nil
}

//go:build !linux

package netns

func checkOS() error { return ErrUnsupported }

func enterAndRun(string, func() error, *bool) error { return ErrUnsupported }

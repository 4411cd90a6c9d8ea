package archive

import (
	"crypto/sha256"
	"hash"
	"io"
	"sync"
)

// The decompression pipeline: one goroutine reads the decompressed stream
// in big chunks and hashes it (the DiffID), while the caller's goroutine
// parses the tar and writes files. On two cores this overlaps inflate and
// sha256 with the file system work.
const (
	chunkSize   = 512 << 10
	chunkCount  = 6
	chunkMinCap = 64 << 10
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// chunkReader is the consumer side of the pipeline.
type chunkReader struct {
	full chan []byte
	free chan []byte
	stop chan struct{}
	done chan struct{}
	cur  []byte
	off  int
	bufs []*[]byte

	// set by the producer before it closes full
	err  error
	size int64
	sum  hash.Hash
}

// newChunkReader starts reading src in a goroutine. Close must be called.
func newChunkReader(src io.Reader) *chunkReader {
	c := &chunkReader{
		full: make(chan []byte, chunkCount),
		free: make(chan []byte, chunkCount),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		sum:  sha256.New(),
	}
	for range chunkCount {
		b := chunkPool.Get().(*[]byte)
		c.bufs = append(c.bufs, b)
		c.free <- (*b)[:cap(*b)]
	}
	go c.produce(src)
	return c
}

func (c *chunkReader) produce(src io.Reader) {
	defer close(c.done)
	defer close(c.full)
	for {
		var buf []byte
		select {
		case buf = <-c.free:
		case <-c.stop:
			return
		}
		n, err := io.ReadAtLeast(src, buf, chunkMinCap)
		if n > 0 {
			c.sum.Write(buf[:n])
			c.size += int64(n)
			select {
			case c.full <- buf[:n]:
			case <-c.stop:
				return
			}
		}
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				c.err = err
			}
			return
		}
	}
}

// Read implements io.Reader.
func (c *chunkReader) Read(p []byte) (int, error) {
	for c.off == len(c.cur) {
		if c.cur != nil {
			c.free <- c.cur[:cap(c.cur)]
			c.cur, c.off = nil, 0
		}
		b, ok := <-c.full
		if !ok {
			if c.err != nil {
				return 0, c.err
			}
			return 0, io.EOF
		}
		c.cur, c.off = b, 0
	}
	n := copy(p, c.cur[c.off:])
	c.off += n
	return n, nil
}

// Close stops the producer and waits for it; src is no longer used after.
func (c *chunkReader) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	for _, b := range c.bufs {
		chunkPool.Put(b)
	}
	c.bufs = nil
}

// digest returns the sha256 and size of everything produced; valid after
// Read returned io.EOF.
func (c *chunkReader) digest() ([]byte, int64) {
	<-c.done
	return c.sum.Sum(nil), c.size
}

module tracer.test/gofixtures

go 1.19

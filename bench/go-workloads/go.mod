module tracer.bench/goworkloads

go 1.19

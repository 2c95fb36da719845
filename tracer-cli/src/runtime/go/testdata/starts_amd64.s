#include "textflag.h"

// func getg() uintptr: the running goroutine's g, as the runtime keeps it in TLS.
TEXT ·getg(SB),NOSPLIT,$0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET

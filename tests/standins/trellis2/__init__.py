print("[SPARSE] Backend: flex_gemm, Attention: flash_attn")  # the real package prints banners on import

import os
import time

from _record import record


class FlowEulerGuidanceIntervalSampler:
    """Same loop shape as flow_euler.py: sample() calls self.sample_once per step under tqdm."""

    def __init__(self, sigma_min=1e-5):
        self.sigma_min = sigma_min

    def sample_once(self, model, x_t, t, t_prev, cond=None, **kwargs):
        time.sleep(float(os.environ.get("TRELLIS_STANDIN_STEP_SECONDS", "0") or 0))
        return {"pred_x_prev": x_t, "pred_x_0": x_t}

    def sample(self, model, noise, cond=None, steps=50, rescale_t=1.0, verbose=True, tqdm_desc="Sampling",
               **kwargs):
        record("sampler.sample", desc=tqdm_desc, steps=steps, rescale_t=rescale_t,
               **{k: v for k, v in kwargs.items() if k in ("guidance_strength", "guidance_rescale",
                                                              "guidance_interval")})
        print(f"{tqdm_desc}: 0/{steps}")  # tqdm noise on stdout
        sample = noise
        for i in range(steps):
            out = self.sample_once(model, sample, 1 - i / steps, 1 - (i + 1) / steps, cond, **kwargs)
            sample = out["pred_x_prev"]
        return {"samples": sample}

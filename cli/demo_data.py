"""The demo's data: a synthetic churn table with a known signal, and a shifted copy for drift."""

import numpy as np
import pandas as pd

PLANS = ["basic", "standard", "premium"]


def churn_frame(rows: int = 600, seed: int = 7, shift: float = 0.0) -> pd.DataFrame:
    """Customers; `shift` moves tenure and charges the way a changed market would."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, rows) * (1 - 0.6 * shift)
    charges = rng.normal(65, 20, rows).clip(10, 200) + 40 * shift
    calls = rng.poisson(1.5 + 2 * shift, rows)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    logit = -0.5 - 0.06 * tenure + 0.03 * (charges - 65) + 0.45 * calls + np.where(plan == "basic", 0.6, -0.3)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i:05d}" for i in range(rows)],
            "tenure_months": tenure.round(1),
            "monthly_charges": charges.round(2),
            "support_calls": calls,
            "plan": plan,
            "churned": churned,
        }
    )

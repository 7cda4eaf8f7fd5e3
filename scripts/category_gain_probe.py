"""Mean predicted gain of the frontier tier over the economy tier, per MT-Bench-like category.

40 prompts written for this probe (5 per category of MT-Bench's eight; none is an MT-Bench
question), decided by the router exactly as the app builds it from its settings (`auto` =
balanced). A category whose gain is high sends its prompts up. Used to see what a change to the
starter set does to open-ended prompts (docs/routing-quality.md, "Answer-format failures"):

    python scripts/category_gain_probe.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.composition.assemble import build_local_router
from shared.config import Settings
from shared.routing.request import RoutingRequest

CATEGORIES: dict[str, list[str]] = {
    "writing": [
        "Write a limerick about a cat who loves the rain.",
        "Write a persuasive blog post about the benefits of cycling to work.",
        "Compose a short poem about autumn leaves falling in a quiet park.",
        "Write a short birthday message for my grandmother who is turning ninety.",
        "Draft a cover letter for a junior data analyst position at a retail company.",
    ],
    "roleplay": [
        "Pretend you are a pirate captain and describe your ship to a new crew member.",
        "Act as a travel agent and recommend a week-long itinerary in Portugal.",
        "You are a medieval knight. Explain to a child why honour matters.",
        "Role-play as a job interviewer and ask me three questions for a sales role.",
        "Imagine you are Sherlock Holmes and deduce what I had for breakfast from my muddy shoes.",
    ],
    "coding": [
        "Write a Python function that merges two sorted lists.",
        "Implement a thread-safe LRU cache in Java with O(1) get and put.",
        "Write a SQL query that returns the top three customers by total order value per month.",
        "Explain and fix the bug: for i in range(len(xs)): xs.remove(xs[i])",
        "Write a bash script that renames every .jpeg file in a folder to .jpg.",
    ],
    "extraction": [
        "Extract every date mentioned in this text: The meeting moved from March 3 to April 12, 2024, and the review is on May 1.",
        "From the following review, list the product name and the rating: 'The Acme X200 blender is great, 4 out of 5 stars.'",
        "Return the names of all people in this sentence as JSON: Alice met Bob and Carol at the station.",
        "Summarise this email in one sentence: Hi team, the release is delayed to Friday because QA found two blocking bugs.",
        "Pull out the city and the temperature from: 'Berlin reached 31 degrees on Tuesday.'",
    ],
    "reasoning": [
        "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Explain.",
        "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. How much does the ball cost?",
        "Three boxes are labelled apples, oranges and mixed, and every label is wrong. Which box do you open to fix all labels?",
        "If it takes five machines five minutes to make five widgets, how long do 100 machines take to make 100 widgets?",
        "David has three sisters. Each of them has one brother. How many brothers does David have?",
    ],
    "math": [
        "Prove that there are infinitely many primes.",
        "Solve for x: 3x^2 - 12x + 9 = 0.",
        "What is the probability of rolling a sum of 7 with two fair dice?",
        "Find the area of a triangle with vertices at (0,0), (4,0) and (1,5).",
        "Compute the derivative of f(x) = x^3 sin(x).",
    ],
    "stem": [
        "Explain how a transistor works as a switch.",
        "What is the difference between mitosis and meiosis?",
        "Why is the sky blue? Explain Rayleigh scattering.",
        "Describe how vaccines train the immune system.",
        "Explain the second law of thermodynamics with an everyday example.",
    ],
    "humanities": [
        "What were the main causes of the First World War?",
        "Compare the political philosophies of Hobbes and Locke.",
        "Explain the significance of the Magna Carta.",
        "Discuss the themes of guilt and ambition in Macbeth.",
        "How did the printing press change European society?",
    ],
}


async def main() -> None:
    router = await build_local_router(Settings())
    print("category    gain  tiers (f/b/e per prompt)")
    for category, prompts in CATEGORIES.items():
        gains, tiers = [], []
        for prompt in prompts:
            decision = await router.decide(RoutingRequest(prompt=prompt, policy="balanced"))
            best: dict[str, float] = {}
            for row in decision.public()["candidates"]:  # type: ignore[attr-defined]
                best[row["tier"]] = max(best.get(row["tier"], 0.0), row["predicted_quality"])
            gains.append(best["frontier"] - best["economy"])
            tiers.append(decision.chosen.tier[0])
        print(f"{category:11s} {statistics.mean(gains):.3f} {''.join(tiers)}")


if __name__ == "__main__":
    asyncio.run(main())

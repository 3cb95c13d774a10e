"""Drive the Opik SDK (`track_openai` + `@track`) against the loopback OpenAI server; its REST traffic goes
to a loopback capture server standing in for the Opik backend (`/api/v1/private/...`).

Run from .envs/fmt-opik (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_opik.py --base-url http://127.0.0.1:PORT/v1 --opik http://127.0.0.1:PORT2/api

The scenario of tests/instrumented_calls.py inside one `@track`ed `support_ticket` function whose
trace gets the thread (session), the user and the cohort keys as metadata and tags
(`opik_context.update_current_trace`), as the Opik docs show.
"""

from __future__ import annotations

import argparse
import os
import sys

import instrumented_calls as calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--opik", required=True)
    args = ap.parse_args()
    os.environ.update({"OPIK_URL_OVERRIDE": args.opik, "OPIK_WORKSPACE": "default", "OPIK_PROJECT_NAME": "support-bot",
                       "OPIK_TRACK_DISABLE": "false", "OPIK_CHECK_TLS_CERTIFICATE": "false"})
    import openai
    import opik
    from opik import opik_context, track
    from opik.integrations.openai import track_openai

    client = track_openai(openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0))

    @track(name="support_ticket")
    def support_ticket() -> None:
        opik_context.update_current_trace(
            thread_id=calls.SESSION_ID, tags=["prod"],
            metadata={"user_id": calls.USER_ID, "tenant": calls.TENANT, "feature": calls.FEATURE,
                      "prompt_version": calls.PROMPT_VERSION})
        calls.run_calls(client, openai.RateLimitError)

    support_ticket()
    opik.flush_tracker()
    return 0


if __name__ == "__main__":
    sys.exit(main())

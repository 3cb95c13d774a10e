"""Drive the Braintrust SDK (`wrap_openai` + `traced`) against the loopback OpenAI server; its log rows go to
a loopback capture server standing in for the Braintrust API.

Run from .envs/fmt-braintrust (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_braintrust.py --base-url http://127.0.0.1:PORT/v1 --api http://127.0.0.1:PORT2

The scenario of tests/instrumented_calls.py inside one `support_ticket` span whose metadata holds the
cohort keys, as the Braintrust docs show (`span.log(metadata=...)`).
"""

from __future__ import annotations

import argparse
import os
import sys

import instrumented_calls as calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api", required=True)
    args = ap.parse_args()
    os.environ.update({"BRAINTRUST_API_KEY": "bt-test-not-a-real-key", "BRAINTRUST_API_URL": args.api,
                       "BRAINTRUST_APP_URL": args.api, "BRAINTRUST_ORG_NAME": "acme-org"})
    import braintrust
    import openai

    logger = braintrust.init_logger(project="support-bot", api_key="bt-test-not-a-real-key", app_url=args.api,
                                    org_name="acme-org")
    client = braintrust.wrap_openai(openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key",
                                                  max_retries=0))
    with logger.start_span(name="support_ticket") as root:
        root.log(metadata={"tenant": calls.TENANT, "user_id": calls.USER_ID, "session_id": calls.SESSION_ID,
                           "feature": calls.FEATURE, "prompt_version": calls.PROMPT_VERSION})
        calls.run_calls(client, openai.RateLimitError)
    logger.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

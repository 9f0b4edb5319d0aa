"""Part 4b of the course, evaluation for impact and harm (survey Sections 5.4 and 6).

One concern per module, so a student finds each idea in one file:
``fairness`` (consumer fairness of LLM recommendations in the FaiRLLM style,
group fairness of CF models, provider fairness and popularity bias),
``privacy`` (membership inference against a trained recommender),
``attacks`` (shilling with fake users, and a detector) and ``injection``
(prompt injection through item text, and defences).

Lessons log harm measurements to the course leaderboard under protocols that
start with ``"fairness:"``, ``"privacy:"`` or ``"robustness:"``; lesson 25's
holistic report (``course_utils.report``) reads them back by that prefix.
"""

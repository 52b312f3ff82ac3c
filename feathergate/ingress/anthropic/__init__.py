"""The Anthropic Messages API as a front door (INGRESS.md §4): pure codecs.

=============  ==================================================================
request        parse ``/v1/messages`` and ``/v1/messages/count_tokens`` bodies
to_chat        a Messages request as a Chat Completions request
to_message     a Chat Completions answer as a Messages answer
stream         Chat Completions chunks as Messages stream events
answers        stop reasons and usage, shared by the two above
names          tool names and ids across both APIs
tokens         the local count_tokens estimate
=============  ==================================================================
"""

"""prosocial.canary"""

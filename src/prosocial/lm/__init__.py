"""prosocial.lm"""

import { useState } from 'react';
import { Pressable, StyleSheet, Text, View } from 'react-native';

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <View style={styles.container}>
      <Text nativeID="title" role="heading" aria-level={1} style={styles.title}>
        Hello from Expo
      </Text>
      <Pressable accessibilityRole="button" onPress={() => setCount(count + 1)}>
        <Text style={styles.button}>count is {count}</Text>
      </Pressable>
    </View>
  );
}

const styles = StyleSheet.create({
  container: { flex: 1, backgroundColor: '#fff', alignItems: 'center', justifyContent: 'center' },
  title: { fontSize: 24, marginBottom: 16 },
  button: { fontSize: 18, padding: 12, backgroundColor: '#e5e7eb', borderRadius: 8 },
});
